"""Training: the classifier with compile + fit; GAN and disentanglement trainers
as ``keras.Model`` subclasses with their own ``train_step``."""
