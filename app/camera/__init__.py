"""Camera: a source URI → frames; a grabber thread that keeps the freshest one."""
