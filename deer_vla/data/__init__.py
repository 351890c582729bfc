"""Demonstrations: the on-disk episode format (`episodes`) and the expert collector (`collect`)."""
