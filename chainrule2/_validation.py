"""Old path of :mod:`chainrule2.validation`, the checks' public home: import from there.

A re-export only, so that code written against the old path keeps importing while it moves.
"""

from chainrule2.validation import (
    check_axis,
    check_choice,
    check_error_prob,
    check_instance,
    check_int,
    check_labelling,
    check_labels,
    check_logits,
    check_num_classes,
    check_positive,
    check_probability,
)

__all__ = [
    "check_axis",
    "check_choice",
    "check_error_prob",
    "check_instance",
    "check_int",
    "check_labelling",
    "check_labels",
    "check_logits",
    "check_num_classes",
    "check_positive",
    "check_probability",
]
