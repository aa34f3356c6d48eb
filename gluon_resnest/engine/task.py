"""What a task gives the engine (engine.loop.train): its model, loaders, parameter groups,
optimizer, the loss of a batch, an evaluator, the metric runs are selected on, the config
fields a resumed run must keep, and its own hooks. The engine knows nothing else of the task;
tasks register by name (:func:`register_task`; gluon_resnest.tasks.get_task finds them)."""

__all__ = ['Task', 'Evaluator', 'Optimizer', 'register_task', 'TASKS']

TASKS = {}  # name: Task class (gluon_resnest.tasks imports every task's module)


def register_task(cls):
    """Class decorator: list a Task subclass under its ``name``."""
    if cls.name in TASKS and TASKS[cls.name] is not cls:
        raise ValueError('task %r is registered twice' % cls.name)
    TASKS[cls.name] = cls
    return cls


class Optimizer(object):
    """An optimizer recipe: MXNet's optimizer ``name``, the global batch ``base_lr`` is given
    for (scaled linearly to the run's), and ``schedule(lr, epochs, iters, warmup_epochs)``
    making the learning-rate scheduler (engine.schedule)."""

    def __init__(self, name, reference_batch, schedule, **params):
        self.name, self.reference_batch, self.schedule = name, reference_batch, schedule
        self.params = params


class Evaluator(object):
    """detectron2's evaluator interface: ``reset``, ``process`` each batch, ``evaluate`` once;
    ``evaluate`` combines every rank's share exactly (through ``comm``) and returns a dict."""

    def reset(self):
        raise NotImplementedError

    def process(self, net, batch):
        raise NotImplementedError

    def evaluate(self, comm=None):
        raise NotImplementedError


class Task(object):
    """A training task. Subclasses set the class attributes and implement the methods;
    ``config`` is its config class (an engine.config.RunConfig)."""
    name = None            # recorded in every checkpoint ('classification', ...)
    config = None
    metric = None          # the record field runs are selected on (higher is better)
    best_key = None        # its best value in a checkpoint's meta ('best_top1', ...)
    metric_label = None    # the curves' label of ``metric``
    best_label = None      # the command's last line: 'best <best_label> 81.20%'
    # the record's field for each field of the evaluator's scores
    record_fields = {}
    # the epoch's log line, formatted with the record
    epoch_line = 'epoch %(epoch)d: train loss %(train_loss).4f'
    # config fields copied into the run's summary
    summary_fields = ()
    loss_label = 'train'  # the curves' label of the training loss
    # net.hybridize's arguments; None: the network runs imperatively
    hybridize = dict(static_alloc=True, static_shape=True)
    # the config fields a resumed run must share with its checkpoint, e.g. the model and its
    # classes (the rest, e.g. the epochs or the learning rate, follows the resuming command)
    identity = ()

    def hooks(self, cfg):
        """The task's own hooks (engine.hooks.Hook) for ``cfg``, besides the engine's."""
        return []

    def build_model(self, cfg, ctx):
        """The network, weights allocated on ``ctx`` (the engine has seeded MXNet's
        generator); no forward pass: Horovod broadcasts the weights before any."""
        raise NotImplementedError

    def loaders(self, cfg, comm, net, log=print):
        """(training loader, its ShardSampler, validation loader) of this rank's shard."""
        raise NotImplementedError

    def param_groups(self, cfg, net):
        """Set per-parameter learning-rate and weight-decay multipliers."""
        from .schedule import exclude_from_weight_decay
        exclude_from_weight_decay(net)

    def optimizer(self, cfg):
        """The Optimizer recipe."""
        raise NotImplementedError

    def start_epoch(self, cfg, epoch, rank):
        """Per-epoch state (e.g. mixup's generator); called after the engine seeded the
        epoch."""

    def loss(self, net, batch, ctx):
        """(loss, count, logs) of a training batch, inside ``autograd.record``: ``loss`` is
        either ``count`` per-sample losses (their gradients are averaged over ``count``) or
        their one mean; ``count`` the batch's samples; ``logs`` named scalar NDArrays averaged
        into the epoch's record as ``train_<name>``."""
        raise NotImplementedError

    def check_epoch(self, cfg, epoch, logs):
        """Called with an epoch's training logs (summed exactly over ranks) before validation;
        raises to stop a run that learns nothing."""

    def evaluator(self, cfg, ctx, net):
        """The Evaluator of validation."""
        raise NotImplementedError

    def record(self, scores):
        """The validation ``scores`` as fields of the epoch's record."""
        return {field: scores[key] for field, key in self.record_fields.items()}

    def describe(self, record):
        """The epoch's log line."""
        return self.epoch_line % record

    def meta(self, cfg):
        """Fields a checkpoint's meta.json records besides the engine's (e.g. the class names a
        dataset gave)."""
        return {}

    def summary(self, cfg):
        """Fields of the run's summary besides the history."""
        return {name: getattr(cfg, name) for name in self.summary_fields}
