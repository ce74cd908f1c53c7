"""Loading dataset rows into Samples: built-in world, POPE builder, hub and local sources."""
