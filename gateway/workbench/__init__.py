"""`routeway bench`: replay a workload against chosen backends and report speed, cost and energy."""
