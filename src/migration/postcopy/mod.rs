//! Post-copy (`postcopy-ram`, `migrate_start_postcopy`): the destination runs the guest
//! before it has all of RAM; a page it lacks is asked of the source when the guest (or a
//! device) touches it, while the source pushes the rest in the background
//! (docs/migration.md, *Post-copy*). The source's side is `send::postcopy`.

pub mod dest;
pub mod uffd;
pub mod wire;
