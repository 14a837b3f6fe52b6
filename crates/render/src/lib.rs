//! Renderer (being written).
