"""Label conventions, in one place (torch's ``ignore_index=255`` agrees)."""

UNLABELED = 255  #: a pixel without a seed: stage A chooses its label, stage B uses the pseudo-label
PADDING = 254  #: a pixel outside the image (crop/pad): ignored everywhere, no pairwise edges
IGNORED_LABELS = (PADDING, UNLABELED)
