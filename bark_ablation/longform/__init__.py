"""Long-form speech: passages generated chunk by chunk under history policies, and how fast each
policy loses the speaker's voice (chunking, policies, generation, scoring, drift statistics, a
planted drift that validates them, the run directory and its report).
"""
