"""Model merging: the maths (maths), streaming over safetensors (stream), the fused Triton kernel (cuda_kernel), reading and writing checkpoints (checkpoint)."""
