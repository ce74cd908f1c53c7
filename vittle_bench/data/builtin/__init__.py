"""The embedded world: procedurally drawn, fully labelled scenes and the questions built from them."""
