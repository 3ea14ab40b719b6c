"""Media: G.711, tones, players and playable media. Pure DSP and frame scheduling; no backend."""
