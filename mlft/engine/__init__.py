"""The Accelerate training and evaluation loop, optimizer and schedule, checkpoints."""
