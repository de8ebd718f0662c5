"""Stage 1, data: the NinaPro database specs, reading .mat files, archives and download, the synthetic recordings,
signal processing, and conversion of each subject's recordings into one tensor file."""
