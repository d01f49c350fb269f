"""Sound: audio out (sounddevice or WAV files), spoken status (pyttsx3/espeak-ng), earcons, the
microphone.
"""
