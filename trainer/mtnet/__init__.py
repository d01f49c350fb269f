"""MT-Net (Ning et al. 2021): the model, its pretrained backbone, losses (Eq. 4/6/7/9/11), open-set
scores.
"""
