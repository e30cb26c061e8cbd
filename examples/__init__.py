"""The seed's scenarios as runnable programs (see each folder's README)."""
