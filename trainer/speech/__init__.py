"""Speech: the spoken class words synthesized with espeak-ng, and pronunciations for the
recognizer.
"""
