"""ObjectClear pieces: bad input and bad folders give clear errors; the fusion module and encoders load back."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from erase_core.core import InputError, MissingFileError, ModelLoadError
from erase_core.models.objectclear import (AttentionStore, attention_capture, attention_mask_loss, build_object_encoder,
                                           build_object_fusion, capture_attention, load_clip_image_encoder,
                                           load_object_fusion, masked_object, objectclear_layers, restore_attention)
from erase_core.models.presets import PRESETS, Preset, build_unet

TINY_CLIP = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=30,
                 patch_size=3, projection_dim=16)


@pytest.fixture
def clip_dir(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    d = tmp_path / 'clip'
    CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP)).save_pretrained(d)
    return d


def test_clip_folder_errors(tmp_path, clip_dir):
    with pytest.raises(MissingFileError, match='not found'):
        load_clip_image_encoder(tmp_path / 'nope')
    f = tmp_path / 'file.bin'; f.write_bytes(b'x')
    with pytest.raises(ModelLoadError, match='expected a folder'):
        load_clip_image_encoder(f)
    empty = tmp_path / 'empty'; empty.mkdir()
    with pytest.raises(ModelLoadError, match='missing config.json'):
        load_clip_image_encoder(empty)
    cfg = json.loads((clip_dir / 'config.json').read_text())
    wrong = tmp_path / 'wrong'; wrong.mkdir()
    (wrong / 'config.json').write_text(json.dumps({**cfg, 'model_type': 'vit'}))
    with pytest.raises(ModelLoadError, match="model_type 'vit'"):
        load_clip_image_encoder(wrong)
    sd = load_file(str(clip_dir / 'model.safetensors'))
    sd.pop('visual_projection.weight')
    save_file(sd, str(clip_dir / 'model.safetensors'), metadata={'format': 'pt'})
    with pytest.raises(ModelLoadError, match='lack part of the CLIP vision model.*visual_projection'):
        load_clip_image_encoder(clip_dir)
    (clip_dir / 'model.safetensors').write_bytes(b'not a safetensors file')
    with pytest.raises(ModelLoadError, match='could not load'):
        load_clip_image_encoder(clip_dir)
    (clip_dir / 'model.safetensors').unlink()
    with pytest.raises(ModelLoadError, match='no weights found'):
        load_clip_image_encoder(clip_dir)


def test_clip_from_objectclear_layout_and_full_clip(tmp_path):
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig
    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, vocab_size=99, projection_dim=16)
    full = CLIPModel(CLIPConfig(text_config=CLIPTextConfig(**text).to_dict(),
                                vision_config=CLIPVisionConfig(**TINY_CLIP).to_dict(), projection_dim=16)).eval()
    full.save_pretrained(tmp_path / 'objectclear' / 'image_prompt_encoder')
    enc = load_clip_image_encoder(tmp_path / 'objectclear')        # finds image_prompt_encoder/
    x = torch.rand(2, 3, 30, 30)
    ref = full.visual_projection(full.vision_model(pixel_values=(x - enc.mean) / enc.std).pooler_output)
    assert torch.allclose(enc(x), ref, atol=1e-6)


def test_fusion_errors(tmp_path):
    fu = build_object_fusion('tiny')
    with pytest.raises(InputError, match='object_embeds must be'):
        fu(torch.zeros(1, 8, 32), torch.zeros(2, 31))
    with pytest.raises(InputError, match='prompt_embeds must be'):
        fu(torch.zeros(3, 8, 32), torch.zeros(2, 32))
    with pytest.raises(InputError, match='outside the 4-token prompt'):
        fu(torch.zeros(1, 4, 32), torch.zeros(2, 32))
    with pytest.raises(MissingFileError):
        load_object_fusion(tmp_path / 'nope')
    (tmp_path / 'd').mkdir()
    with pytest.raises(ModelLoadError, match='no fusion weights found'):
        load_object_fusion(tmp_path / 'd')
    (tmp_path / 'bad.safetensors').write_bytes(b'garbage')
    with pytest.raises(ModelLoadError, match='not a readable safetensors'):
        load_object_fusion(tmp_path / 'bad.safetensors', 'tiny')
    sd = fu.state_dict(); sd.pop('layer_norm.weight'); sd['extra'] = torch.zeros(1)
    save_file(sd, str(tmp_path / 'partial.safetensors'))
    with pytest.raises(ModelLoadError, match=r"missing \['layer_norm.weight'\].*unexpected \['extra'\]"):
        load_object_fusion(tmp_path / 'partial.safetensors', 'tiny')


def test_authors_folder_layout(tmp_path):
    fu = build_object_fusion('tiny', seed=3)
    (tmp_path / 'postfuse_module').mkdir()
    save_file(fu.state_dict(), str(tmp_path / 'postfuse_module' / 'model.safetensors'))
    fu2 = load_object_fusion(tmp_path, 'tiny')
    assert all(torch.equal(a, b) for a, b in zip(fu.state_dict().values(), fu2.state_dict().values()))


def test_masked_object_and_encoder_inputs():
    with pytest.raises(InputError, match='image must be'):
        masked_object(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(InputError, match='mask must be'):
        masked_object(torch.zeros(2, 3, 8, 8), torch.zeros(1, 1, 8, 8))
    x = torch.rand(1, 3, 20, 30); m = torch.zeros(1, 1, 20, 30); m[..., 2:6, 25:29] = 1
    y = masked_object(x, m, size=4, crop=True, margin=0.0)
    assert torch.allclose(y, x[..., 2:6, 25:29])                     # a 4x4 box at its own size: the pixels themselves
    custom = Preset('custom', unet=PRESETS['tiny'].unet, vae=PRESETS['tiny'].vae)
    with pytest.raises(InputError, match="no object encoder is defined for preset 'custom'"):
        build_object_encoder(custom)


def test_store_and_capture_errors():
    unet = build_unet('tiny')
    with pytest.raises(InputError, match='not attention layers'):
        capture_attention(unet, AttentionStore(), ['down_blocks.0.nope'])
    st = AttentionStore(); st.record('x', torch.zeros(1, 10))
    with pytest.raises(InputError, match='do not fit a 4x4 latent'):
        st.maps((4, 4))
    with pytest.raises(InputError, match='empty'):
        AttentionStore().mean_map((4, 4))
    before = {k: type(v) for k, v in unet.attn_processors.items()}
    prev = capture_attention(unet, AttentionStore(), objectclear_layers(unet)[:1])
    restore_attention(unet, prev)
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before


def test_odd_latent_sizes_and_inactive_store():
    unet = build_unet('tiny').eval()
    x = torch.randn(2, 9, 10, 14); c = torch.randn(2, 8, 32)
    with torch.no_grad(), attention_capture(unet) as st:
        ref = unet(x, 10, encoder_hidden_states=c).sample
        maps = st.maps((10, 14))
        st.clear(); st.active = False
        assert (unet(x, 10, encoder_hidden_states=c).sample - ref).abs().max() < 1e-5   # the fused kernel's output
        assert st.probs == {}                                           # inactive: nothing recorded
    assert {tuple(m.shape) for m in maps.values()} == {(2, 5, 7)}


def test_mask_loss_errors():
    with pytest.raises(InputError, match='no attention maps'):
        attention_mask_loss({}, torch.zeros(1, 1, 4, 4))
    with pytest.raises(InputError, match='target must be'):
        attention_mask_loss([torch.zeros(1, 2, 2)], torch.zeros(1, 4, 4))
    with pytest.raises(InputError, match='each map must be'):
        attention_mask_loss([torch.zeros(2, 2, 2)], torch.zeros(1, 1, 4, 4))


def test_objectclear_prompt_from_local_text_encoders(tmp_path):
    from test_models import _offline_clip                           # offline CLIP text encoders (tests/test_models.py)
    from erase_core.models.objectclear import OBJECTCLEAR_PROMPT, objectclear_condition
    from erase_core.models.presets import encode_empty_prompt
    tok, enc = _offline_clip(tmp_path, hidden=16)
    tok2, enc2 = _offline_clip(tmp_path, hidden=16, name_enc='text_encoder_2', name_tok='tokenizer_2', projection=True)
    emb, pooled = objectclear_condition(tmp_path, 'sdxl-inpaint')
    ids = tok([OBJECTCLEAR_PROMPT], padding='max_length', max_length=77, return_tensors='pt').input_ids
    with torch.no_grad():
        want = torch.cat([enc(ids, output_hidden_states=True).hidden_states[-2],
                          enc2(ids, output_hidden_states=True).hidden_states[-2]], -1)
        want_pooled = enc2(ids).text_embeds
    assert torch.allclose(emb, want, atol=1e-6) and torch.allclose(pooled, want_pooled, atol=1e-6)
    assert not torch.allclose(emb, encode_empty_prompt(tmp_path, sdxl=True)[0])


def test_capture_equals_default_on_sdxl_conditioning():
    unet = build_unet('tiny-xl', seed=2).eval()
    x, c = torch.randn(4, 9, 16, 16), torch.randn(4, 8, 32)          # a CFG-sized batch: rows 0-1 and 2-3
    added = dict(text_embeds=torch.randn(4, 32), time_ids=torch.tensor([[32., 32, 0, 0, 32, 32]] * 4))
    with torch.no_grad():
        ref = unet(x, 999, encoder_hidden_states=c, added_cond_kwargs=added).sample
        with attention_capture(unet, token_index=3) as st:
            got = unet(x, 999, encoder_hidden_states=c, added_cond_kwargs=added).sample
    assert (got - ref).abs().max() < 1e-5
    assert st.token_index == 3 and len(st.probs) == len(objectclear_layers(unet))
    assert all(m.shape == (4, 8, 8) for m in st.maps((16, 16)).values())
    assert st.mean_map((16, 16), size=(4, 4)).shape == (4, 4, 4)


def test_mixed_dtypes_are_cast_at_the_boundaries():
    "bf16 attention maps (the recipes' mixed precision) and an fp16 image embedding reach fp32 layers without a dtype error."
    from erase_core.models.objectclear import attention_mask_loss, build_object_fusion
    g = torch.Generator().manual_seed(0)
    maps = [torch.rand(2, 8, 8, generator=g)]; target = (torch.rand(2, 1, 32, 32, generator=g) > 0.6).float()
    full = attention_mask_loss(maps, target)
    half = attention_mask_loss([m.bfloat16() for m in maps], target)
    assert half.dtype == torch.bfloat16 and abs(float(half) - float(full)) < 2e-2
    fu = build_object_fusion('tiny')
    emb = torch.randn(2, fu.config.image_dim, generator=g)
    out = fu(torch.randn(1, 8, 32), emb.half())
    assert out.dtype == torch.float32 and out.shape == (2, 8, 32)
    assert torch.allclose(fu.token(emb.half()), fu.token(emb.half().float()))
