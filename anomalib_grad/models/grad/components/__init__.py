"""Parts of GRAD: backbone features, coordinates, grids, fusion branches, anomaly synthesis, caches."""
