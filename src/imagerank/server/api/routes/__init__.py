"""One router per group of API routes (collection, images, meta, search), each a thin layer over `Index`."""
