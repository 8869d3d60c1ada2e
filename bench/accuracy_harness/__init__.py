"""The pieces of bench/accuracy.py (the command; run `python bench/accuracy.py --help`).

* data:    the shared data (labels/clips.csv, the clips), the trackers, and one tracking
           run per clip and backend whose arrays everything else reads;
* outputs: the three outputs (fused, geometric = "solver", model) solved from those arrays;
* metrics: label accuracy, ROC AUC, r against the model, the rest level, head angles;
* motion:  jitter and the Shaper's lag;
* plots:   one PNG per clip, drawn with OpenCV;
* report:  docs/accuracy.md.

Nothing runs at import; nothing is cached on disk; the data is never copied.
"""
