"""Evaluation: Corr2D, PESQ, STOI, recognizer word accuracy, reports, the classifier+TTS
baseline."""
