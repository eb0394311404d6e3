//! Block image formats (raw, qcow2) behind one trait.
