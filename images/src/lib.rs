//! capsa-images: the image store (blobs, manifests, layers), the registry client and build. Its
//! content arrives with the images issue; the crate exists so the workspace's shape is fixed.
