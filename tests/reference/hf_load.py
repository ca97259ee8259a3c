"""How the reference scripts load a model with transformers: eager attention (the plain
softmax(QK^T / sqrt(d)) V that lethe's CPU path is compared with), float32 unless told, in
evaluation mode (no dropout; gradients still flow)."""
import torch
import transformers

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()


def load_causal_lm(path, dtype=torch.float32):
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="eager")
    return model.train(False)
