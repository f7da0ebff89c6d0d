"""Outside processes behind narrow interfaces: buildah, debootstrap, uv and the package indexes, apt."""
