"""The targets (issue 11), in one place for the report and tests/test_accuracy.py.
Accuracies are fractions of the scored labelled frames; AUCs pooled over every person."""

ACCURACY = {"eyes": 1.0, "mouth": 0.97, "smile": 0.95}       # fused, labelled frames
AUC = {"eyes closed": 0.97, "mouth open": 0.97, "smile": 0.97,
       "brows raised": 0.9, "brows lowered": 0.9, "pucker": 0.9, "funnel": 0.9}
GEOMETRIC_EYES = 1.0            # the geometric path's eye accuracy
GEOMETRIC_BEHIND_MODEL = 0.03   # geometric mouth and smile at most 3 points below the model
CLOSED_BLINK = 0.9              # every labelled closed eye reads at least this (fused, geometric)
LOWERED_BLINK = 0.35            # lowered eyes read at most this
REST = 0.15                     # the largest channel on a person's neutral frames
R_CLIP = 0.85                   # per clip, geometric, the five target channels
R_POOLED = 0.9
HEAD_DEG = 2.0                  # mean absolute difference to the model's matrix, per axis and clip
SOLVE_MS = 0.2                  # median Solver.solve per frame, fusion included
