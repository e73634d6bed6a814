"""Label conventions, in one place (torch's ``ignore_index=255`` agrees)."""

UNLABELED = 255  #: a pixel without a seed: stage A chooses its label, stage B uses the pseudo-label
PADDING = 254  #: a pixel outside the image (crop/pad): ignored everywhere, no pairwise edges
IGNORED_LABELS = (PADDING, UNLABELED)
#: At most 254 classes (ids 0..253): wherever labels carry the 254/255 values above (seeds, integer
#: targets), more classes would make an unlabeled pixel a seed of class 255 — refused, never guessed.
MAX_CLASSES = PADDING
