"""RegNet models: pycls's RegNetY-4.0GF and the ResNeSt paper's RegNet-SA-50 (Table 1, the
newer version of the paper). No published MXNet weights exist for them."""
from ..backbone.regnet import regnet_stages
from .registry import register_model

__all__ = ['regnety_4gf', 'regnety_4gf_block_se', 'regnet_sa50']


def _regnety_4gf():
    # pycls's config: DEPTH 22, W0 96, WA 31.41, WM 2.24, GROUP_W 64, BOT_MUL 1.0, SE_R 0.25
    # -> widths 128/192/512/1088, depths 2/6/12/2, groups 2/3/8/17
    widths, depths, group_widths = regnet_stages(96, 31.41, 2.24, 22, 64)
    return dict(widths=widths, depths=depths, group_widths=group_widths, attention='se',
                se_ratio=0.25)


@register_model(trunk='regnet', top1=79.4, params_m=20.65, gflops=3.97,
                extra=dict(source='pycls model zoo', flops_convention='conv + dense MACs'))
def regnety_4gf():
    """RegNetY-4.0GF as pycls defines it: SE bottleneck 0.25 x the block's *input* width
    (20,646,656 parameters, 3.97 G multiply-adds at 224 px)."""
    return _regnety_4gf()


@register_model(trunk='regnet', top1=79.3, params_m=21.05, gflops=4.00,
                extra=dict(source='ResNeSt paper (newer version), Table 1',
                           flops_convention='conv + dense MACs'))
def regnety_4gf_block_se():
    """RegNetY-4.0GF with the SE bottleneck sized from the block's own width, the reading
    that gives the ResNeSt paper's 21.05M (Table 1's baseline)."""
    return dict(_regnety_4gf(), se_from='block')


@register_model(trunk='regnet', top1=79.6, params_m=21.67, gflops=4.04,
                extra=dict(source='ResNeSt paper (newer version), Table 1',
                           flops_convention='conv + dense MACs + BN outputs'))
def regnet_sa50():
    """RegNet-SA-50 (ResNeSt paper, Table 1) as read here: widths 216/288/720/1344, depths
    3/4/6/3, 3x3 group widths 8/16/16/32 (groups 27/18/45/42), bottleneck ratio 1, the SE of
    a Y block replaced by Split-Attention with radix 1 and cardinality 6/24/18/28 (attention
    width max(width / 4, 32) with BN). This gives 21.66M parameters (published: 21.67M) and
    4.007 G conv + dense multiply-adds, 4.04 G with BN outputs counted as the table does."""
    return dict(widths=(216, 288, 720, 1344), depths=(3, 4, 6, 3),
                group_widths=(8, 16, 16, 32), attention='splat', radix=1,
                cardinalities=(6, 24, 18, 28))
