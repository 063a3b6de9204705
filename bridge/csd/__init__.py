"""The CSD vocabulary: request parameters in, the streamed CSD document writer out."""
