"""Read and validate: Gardenfile.toml -> spec -> resolved Garden (with flavors and the notebook's facts)."""
