"""Analysis of a finished optimisation of the demonstration model.

analyse_cp() takes the best individuals of a checkpoint, writes them as hoc,
re-runs the protocols and draws the responses, the objectives and the
evolution of the fitness. matplotlib is only imported when drawing (the
figures are created by the caller, see opt_neuron.py --analyse).
"""

import collections
import functools
import logging
import os
import pickle
import time

import numpy as np

logger = logging.getLogger(__name__)


def set_rcoptions(func):
    """Draw with thicker axes, restoring matplotlib's settings afterwards"""

    @functools.wraps(func)
    def wrap(*args, **kwargs):
        import matplotlib
        with matplotlib.rc_context(rc={'axes.linewidth': 2}):
            return func(*args, **kwargs)

    return wrap


def load_checkpoint(cp_filename):
    """Checkpoint dict (population, halloffame, logbook, ...)"""
    with open(cp_filename, 'rb') as cp_file:
        return pickle.load(cp_file, encoding='latin1')


def run_name(cp_filename):
    """Name of a run: the checkpoint's file name without .pkl"""
    return os.path.splitext(os.path.basename(cp_filename))[0]


def get_responses(cell_evaluator, individuals, filename=None):
    """Responses of the individuals, cached in `filename` when given"""
    if filename and os.path.exists(filename):
        with open(filename, 'rb') as responses_file:
            return pickle.load(responses_file)

    responses = []
    for individual in individuals:
        responses.append(cell_evaluator.run_protocols(
            cell_evaluator.fitness_protocols.values(),
            param_values=cell_evaluator.param_dict(individual)))

    if filename:
        with open(filename, 'wb') as responses_file:
            pickle.dump(responses, responses_file)

    return responses


@set_rcoptions
def analyse_evo(cp_filename, figs):
    """Draw the evolution of the fitness of a checkpoint"""
    evol_fig, evol_box = figs
    plot_log(load_checkpoint(cp_filename)['logbook'], fig=evol_fig,
             box=evol_box)


@set_rcoptions
def analyse_cp(opt, cp_filename, responses_filename, figs, nrhof=0):
    """Analyse the individual nrhof of the hall of fame of a checkpoint

    Writes <checkpoint dir>/cell_<run>_<nrhof>.hoc and the traces in
    r_<run>_<nrhof>/<recording>.txt (columns t v), and draws the responses,
    objectives and evolution figures in figs.
    """
    (responses_fig, _), (objectives_fig, objectives_box), \
        (evol_fig, evol_box) = figs

    cp = load_checkpoint(cp_filename)
    hof = cp['halloffame']
    if nrhof >= len(hof):
        raise ValueError('The hall of fame of %s holds %d individuals' %
                         (cp_filename, len(hof)))
    individual = hof[nrhof]
    evaluator = opt.evaluator
    parameter_values = evaluator.param_dict(individual)
    run = run_name(cp_filename)

    hoc_filename = os.path.join(
        os.path.dirname(cp_filename), 'cell_%s_%d.hoc' % (run, nrhof))
    with open(hoc_filename, 'w') as hoc_file:
        hoc_file.write(evaluator.cell_model.create_hoc(
            param_values=parameter_values))
    logger.info('Wrote %s', hoc_filename)

    if responses_filename:
        responses = get_responses(evaluator, [individual],
                                  responses_filename)[0]
    else:
        responses = {}
        for protocol in evaluator.fitness_protocols.values():
            start_time = time.time()
            responses.update(evaluator.run_protocol(
                protocol, param_values=parameter_values,
                isolate=evaluator.isolate_protocols))
            logger.info('Ran protocol %s in %.2f s', protocol.name,
                        time.time() - start_time)

    objectives = evaluator.fitness_calculator.calculate_scores(responses)
    stored = sum(individual.fitness.values)
    recomputed = sum(objectives.values())
    logger.info('Sum of objectives of %s #%d: stored %.4f, recomputed %.4f',
                run, nrhof, stored, recomputed)

    plot_objectives(objectives, fig=objectives_fig, box=objectives_box)

    traces_dir = 'r_%s_%d' % (run, nrhof)
    save_responses(responses, traces_dir)
    plot_multiple_responses([responses], fig=responses_fig,
                            traces=sorted(responses))

    plot_log(cp['logbook'], fig=evol_fig, box=evol_box)

    return objectives


def save_responses(responses, traces_dir):
    """One text file per recording with columns t and v"""
    os.makedirs(traces_dir, exist_ok=True)
    for name, response in responses.items():
        data = np.column_stack((response['time'], response['voltage']))
        np.savetxt(os.path.join(traces_dir, name + '.txt'), data,
                   header='t v', comments='', fmt='%.8g')


def _axes(fig, box, left=0.1, right=0.05, top=0.05, bottom=0.1):
    """Axes inside `box` (a dict of left, bottom, width, height)"""
    return fig.add_axes((
        box['left'] + box['width'] * left,
        box['bottom'] + box['height'] * bottom,
        box['width'] * (1 - left - right),
        box['height'] * (1 - bottom - top)))


def plot_log(log, fig=None, box=None):
    """Population average, minimum and standard deviation per generation"""
    gen_numbers = log.select('gen')
    mean = np.array(log.select('avg'))
    std = np.array(log.select('std'))
    minimum = np.array(log.select('min'))

    axes = _axes(fig, box)
    axes.plot(gen_numbers, mean, color='black', linewidth=2,
              label='population average')
    axes.fill_between(gen_numbers, mean - std, mean + std,
                      color='lightgray', linewidth=2,
                      label='population standard deviation')
    axes.plot(gen_numbers, minimum, color='red', linewidth=2,
              label='population minimum')

    axes.set_xlim(min(gen_numbers) - 1, max(gen_numbers) + 1)
    axes.set_xlabel('Generation #')
    axes.set_ylabel('Sum of objectives')
    axes.set_ylim([0, max(mean + std) * 1.05])
    axes.legend()


def plot_objectives(objectives, fig=None, box=None):
    """One horizontal bar per objective (score in # of std)"""
    objectives = collections.OrderedDict(sorted(objectives.items()))

    axes = _axes(fig, box, left=0.4)
    ytick_pos = [x + 0.5 for x in range(len(objectives))]
    axes.barh(ytick_pos, list(objectives.values()), height=0.5,
              align='center', color='#779ECB')
    axes.set_yticks(ytick_pos)
    axes.set_yticklabels(list(objectives.keys()), size='x-small')
    axes.set_ylim(-0.5, len(objectives) + 0.5)
    axes.set_xlabel('Objective value (# std)')
    axes.set_ylabel('Objectives')

    logger.info('Sum of objectives %f (# std)', sum(objectives.values()))


def plot_multiple_responses(responses, fig, traces):
    """One panel per recording; the last response set is drawn on top"""
    axes = [fig.add_subplot(len(traces), 1, i + 1)
            for i in range(len(traces))]
    for index, response in enumerate(responses):
        color = 'blue' if index == len(responses) - 1 else 'lightblue'
        for ax, name in zip(axes, traces):
            ax.plot(response[name]['time'], response[name]['voltage'],
                    color=color, linewidth=1)
            ax.set_ylabel(name + '\nVoltage (mV)', size='x-small')
    axes[-1].set_xlabel('Time (ms)')
