"""Datasets: image sources (MNIST, CIFAR, folders), one image decoding and preprocessing path,
caches, augmentation.
"""
