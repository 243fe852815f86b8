"""The data of a run: the modular operations and their train/test split (`tasks`) and the minibatch streams
(`sampler`: grokscope's counter hash and the papers' numpy stream)."""
