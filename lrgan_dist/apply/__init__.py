"""Using a generator with a job spec: build it (``build``), render latents, edit grids."""
