"""Presets: building, saving and loading from local folders, conditioning from a local text encoder."""
import json

import pytest
import torch

from erase_core.core import InputError, MissingFileError, ModelLoadError
from erase_core.models.presets import (PRESETS, build_unet, encode_empty_prompt, load_components, load_unet_state_dict,
                                       n_params, save_components)


def test_meta_and_random_builds_agree_in_shape():
    for name in ('tiny', 'toy'):
        meta, rand = build_unet(name, 'meta'), build_unet(name, 'random')
        assert next(meta.parameters()).is_meta and not next(rand.parameters()).is_meta
        assert n_params(meta) == n_params(rand)
        assert build_unet(name, 'random', seed=3).conv_in.weight.equal(build_unet(name, 'random', seed=3).conv_in.weight)


def test_unknown_preset_and_source():
    with pytest.raises(InputError, match='unknown preset'):
        load_components('sd3')
    with pytest.raises(MissingFileError, match='not/here'):
        load_components('tiny', 'not/here')


def test_folder_round_trip_and_missing_parts(tmp_path):
    c = load_components('tiny', seed=2)
    save_components(c, tmp_path / 'm')
    c2 = load_components('tiny', tmp_path / 'm')
    assert all(torch.equal(a, b) for a, b in zip(c.unet.state_dict().values(), c2.unet.state_dict().values()))
    assert torch.equal(c.prompt_embeds, c2.prompt_embeds)
    for part in ('scheduler', 'unet'):
        d = tmp_path / part
        save_components(c, d)
        import shutil; shutil.rmtree(d / part)
        with pytest.raises(ModelLoadError, match=f"missing folder '{part}/'"):
            load_components('tiny', d)
    d = tmp_path / 'noweights'
    save_components(c, d)
    for f in (d / 'vae').glob('*.safetensors'): f.unlink()
    with pytest.raises(ModelLoadError, match='no weights found'):
        load_components('tiny', d)


def test_non_inpainting_unet_is_rejected(tmp_path):
    from diffusers import UNet2DConditionModel
    c = load_components('tiny')
    save_components(c, tmp_path)
    cfg = dict(PRESETS['tiny'].unet, in_channels=4)
    UNet2DConditionModel(**cfg).save_pretrained(tmp_path / 'unet')
    with pytest.raises(ModelLoadError, match=r'2 x 4 \+ 1 = 9 input channels'):
        load_components('tiny', tmp_path)


def test_student_state_dict_on_top_of_base(tmp_path):
    student = build_unet('tiny', seed=9)
    torch.save({'module.' + k: v for k, v in student.state_dict().items()}, tmp_path / 'student.pt')
    c = load_components('tiny', seed=0, unet_weights=tmp_path / 'student.pt')
    assert c.unet.conv_in.weight.equal(student.conv_in.weight)
    sd = student.state_dict(); sd.pop('conv_in.bias')
    torch.save(sd, tmp_path / 'partial.pt')
    with pytest.raises(ModelLoadError, match='missing \\(1\\): conv_in.bias'):
        load_unet_state_dict(build_unet('tiny'), tmp_path / 'partial.pt')


def _byte_chars():
    """GPT-2 / CLIP's printable stand-ins for the 256 byte values, in their canonical order."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return [chr(c) for c in cs]


def _offline_clip(root, hidden=32, name_enc='text_encoder', name_tok='tokenizer', projection=False):
    """A tiny CLIP text encoder and a byte-level tokenizer written without the hub (REFERENCE.md recipe)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    tok_dir = root / name_tok; tok_dir.mkdir(parents=True)
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + '</w>': i + 256 for i, c in enumerate(chars)})
    vocab.update({'<|startoftext|>': 512, '<|endoftext|>': 513})
    (tok_dir / 'vocab.json').write_text(json.dumps(vocab))
    (tok_dir / 'merges.txt').write_text('#version: 0.2\n')
    tok = CLIPTokenizer.from_pretrained(tok_dir)
    tok.save_pretrained(tok_dir)
    cfg = CLIPTextConfig(vocab_size=514, hidden_size=hidden, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=77, projection_dim=hidden, bos_token_id=512, eos_token_id=513, pad_token_id=513)
    torch.manual_seed(0)
    enc = (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()
    enc.save_pretrained(root / name_enc)
    return tok, enc


def test_empty_prompt_embedding_from_local_text_encoder(tmp_path):
    c = load_components('tiny')
    save_components(c, tmp_path)
    (tmp_path / 'condition.pt').unlink()
    tok, enc = _offline_clip(tmp_path)
    assert len(tok) == 514
    comps = load_components('tiny', tmp_path)
    ids = tok([''], padding='max_length', max_length=77, return_tensors='pt').input_ids
    with torch.no_grad():
        want = enc(ids).last_hidden_state
    assert comps.prompt_embeds.shape == (1, 77, 32)
    assert torch.allclose(comps.prompt_embeds, want)
    # a text encoder of the wrong width is caught, naming both widths
    import shutil; shutil.rmtree(tmp_path / 'text_encoder'); shutil.rmtree(tmp_path / 'tokenizer')
    _offline_clip(tmp_path, hidden=48)
    with pytest.raises(ModelLoadError, match='condition width 48'):
        load_components('tiny', tmp_path)


def test_sdxl_conditioning_concatenates_both_encoders(tmp_path):
    _offline_clip(tmp_path, hidden=16)
    _offline_clip(tmp_path, hidden=16, name_enc='text_encoder_2', name_tok='tokenizer_2', projection=True)
    emb, pooled = encode_empty_prompt(tmp_path, sdxl=True)
    assert emb.shape == (1, 77, 32) and pooled.shape == (1, 16)
