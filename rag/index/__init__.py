"""The index artifact on disk, reader and writer together: manifest, FAISS index types, chunk store, documents."""
