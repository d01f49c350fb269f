"""Keys and controllers: which key press becomes which action (terminal, X hotkey, evdev,
headless).
"""
