"""Input-compression baselines: compress the point cloud itself, classify the decoded cloud."""
