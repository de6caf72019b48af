//! Nothing here: this package exists to compile librocksdb-sys.
