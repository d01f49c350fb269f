"""The modes a user runs: live (the camera loop), describe (files → WAVs), teach; and the one
answer path they share.
"""
