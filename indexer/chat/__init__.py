"""What every chat adapter shares: reading chat bodies and adding context (`bodies`), and one
session with the index (`session`)."""
