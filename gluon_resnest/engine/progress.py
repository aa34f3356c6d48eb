"""What a run shows while it trains and leaves behind: progress bars, the curves' figure."""
from .checkpoint import atomic_file

__all__ = ['progress_bar', 'validation_bar', 'with_progress', 'plot_curves', 'save_figure']


def progress_bar(cfg, comm, iters, epoch):
    """A tqdm bar for the epoch on rank 0 when ``cfg.progress``, else None."""
    if comm.rank != 0 or not cfg.progress:
        return None
    from tqdm import tqdm
    return tqdm(total=iters, desc='epoch %d/%d' % (epoch + 1, cfg.epochs), leave=True)


def validation_bar(show, comm, loader, what='validating'):
    """A transient tqdm bar over ``loader``'s batches on rank 0 when ``show``, else None."""
    if comm is not None and comm.rank != 0 or not show:
        return None
    from tqdm import tqdm
    return tqdm(total=len(loader) if hasattr(loader, '__len__') else None, desc=what,
                leave=False)


def with_progress(loader, progress):
    """``loader``'s batches, advancing ``progress`` (a tqdm bar, or None) after each and closing
    it at the end."""
    try:
        for batch in loader:
            yield batch
            if progress is not None:
                progress.update(1)
    finally:
        if progress is not None:
            progress.close()


def plot_curves(history, path, metric='val_top1', metric_label='validation top-1 (%)',
                loss_label='train (smoothed/mixed targets)'):
    """Training loss (and validation loss, where recorded) and a validation ``metric`` by
    epoch, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    epochs = [h['epoch'] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h['train_loss'] for h in history], 'o-', label=loss_label)
    if all('val_loss' in h for h in history):
        ax1.plot(epochs, [h['val_loss'] for h in history], 's-', label='validation')
    ax1.set_xlabel('epoch')
    ax1.set_ylabel('loss')
    ax1.legend()
    ax2.plot(epochs, [h[metric] for h in history], 'o-', color='C2')
    if all(metric + '_weights' in h for h in history):  # --ema-decay: the average was validated
        ax2.lines[-1].set_label('moving average (selected on)')
        ax2.plot(epochs, [h[metric + '_weights'] for h in history], 's--', color='C1',
                 label='weights')
        ax2.legend()
    ax2.set_xlabel('epoch')
    ax2.set_ylabel(metric_label)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def save_figure(fig, path):
    """Write a matplotlib figure as a PNG atomically (:func:`atomic_file`), then close it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
