//! Image folder source (torchvision ImageFolder layout, or a manifest CSV).
// STUB: filled in by the sources helper.
