"""Runs repeated over seeds, summarized as mean ± standard deviation per variant."""
import numpy as np

__all__ = ['mean_std']


def mean_std(rows, by, groups, metrics):
    """{group: {metric: [mean, std], 'runs': n}} over the ``rows`` (dicts) whose ``rows[by]``
    is that group, in the order of ``groups``; groups without runs yet are left out. The
    standard deviation is the population one (numpy's default), as in the paper's tables."""
    table = {}
    for group in groups:
        mine = [row for row in rows if row[by] == group]
        if mine:
            table[group] = {key: [round(float(np.mean([r[key] for r in mine])), 2),
                                  round(float(np.std([r[key] for r in mine])), 2)]
                            for key in metrics}
            table[group]['runs'] = len(mine)
    return table
