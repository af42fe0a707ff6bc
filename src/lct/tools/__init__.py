"""Tools that train the shipped assets (src/lct/assets): the MNIST autoencoder and the digit classifier."""
