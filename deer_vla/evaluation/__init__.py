"""Closed-loop evaluation: success vs compute; `deer-vla evaluate`."""
