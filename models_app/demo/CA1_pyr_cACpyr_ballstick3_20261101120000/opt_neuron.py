"""Run the optimisation of the demonstration model CA1_PC_demo.

A small BluePyOpt optimisation laid out like the HBP hippocampus
optimisations (config/, model/, morphology/, mechanisms/, checkpoints/).
Compile the mechanisms first (nrnivmodl mechanisms), then e.g.

    python opt_neuron.py --start --offspring_size=4 --max_ngen=4 \\
        --checkpoint ./checkpoints/checkpoint.pkl
    python opt_neuron.py --continue_cp --max_ngen=6 \\
        --checkpoint ./checkpoints/checkpoint.pkl
    python opt_neuron.py --analyse --checkpoint ./checkpoints

USEIPYP=1 evaluates the individuals on the engines of an ipyparallel cluster
(profile IPYTHON_PROFILE); BLUEPYOPT_SEED sets the random seed.
"""

import argparse
import logging
import os
import sys

import bluepyopt

import model.evaluator

logging.basicConfig(stream=sys.stdout)
logger = logging.getLogger()
logger.setLevel(logging.INFO)


def get_parser():
    """Command line options, as in the HBP optimisations"""
    parser = argparse.ArgumentParser(description='Neuron optimization')
    parser.add_argument('--start', action='store_true',
                        help='start a new optimisation')
    parser.add_argument('--continue_cp', '--resume', action='store_true',
                        dest='continue_cp', default=False,
                        help='continue the optimisation from --checkpoint')
    parser.add_argument('--checkpoint', required=False,
                        default='./checkpoints/default.pkl',
                        help='checkpoint pickle; with --analyse, a folder '
                             'of *.pkl checkpoints')
    parser.add_argument('--offspring_size', type=int, required=False,
                        default=2, help='number of individuals in offspring')
    parser.add_argument('--max_ngen', type=int, required=False, default=2,
                        help='maximum number of generations')
    parser.add_argument('--nnhof', type=int, required=False, default=1,
                        help='number of hall of fame individuals to analyse')
    parser.add_argument('--responses', required=False, default=None,
                        help='response pickle file to avoid recalculation')
    parser.add_argument('--analyse', action='store_true',
                        help='analyse the checkpoints: figures/*.pdf and '
                             'checkpoints/cell_<run>_<n>.hoc')
    return parser


evaluator = model.evaluator.create('CA1_PC_demo', cvode_active=True, dt=0.025)

if os.getenv('USEIPYP') == '1':
    from ipyparallel import Client
    rc = Client(profile=os.getenv('IPYTHON_PROFILE'))
    lview = rc.load_balanced_view()
    map_function = lview.map_sync
else:
    map_function = None

opt = bluepyopt.optimisations.DEAPOptimisation(
    evaluator=evaluator,
    map_function=map_function,
    seed=os.getenv('BLUEPYOPT_SEED', '1'))


def analyse(args):
    """Figures and hoc files of the best individuals of the checkpoints"""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if os.path.isdir(args.checkpoint):
        cp_filenames = [os.path.join(args.checkpoint, name)
                        for name in sorted(os.listdir(args.checkpoint))
                        if name.endswith('.pkl')]
    elif os.path.isfile(args.checkpoint):
        cp_filenames = [args.checkpoint]
    else:
        cp_filenames = []
    if not cp_filenames:
        print('No checkpoint file available run optimization '
              'first with --start')
        return

    os.makedirs('figures', exist_ok=True)
    box = {'left': 0.0, 'bottom': 0.0, 'width': 1.0, 'height': 1.0}
    for cp_filename in cp_filenames:
        run = model.analysis.run_name(cp_filename)
        for nrhof in range(args.nnhof):
            figs = {kind: plt.figure(figsize=(10, 10), facecolor='white')
                    for kind in ('responses', 'objectives', 'evolution')}
            model.analysis.analyse_cp(
                opt=opt,
                cp_filename=cp_filename,
                responses_filename=args.responses,
                figs=((figs['responses'], box),
                      (figs['objectives'], box),
                      (figs['evolution'], box)),
                nrhof=nrhof)
            for kind, fig in figs.items():
                fig.savefig(os.path.join(
                    'figures', 'neuron_%s_%s_%d.pdf' % (kind, run, nrhof)))
                plt.close(fig)


def main():
    """Main"""
    args = get_parser().parse_args()

    if args.start or args.continue_cp:
        logger.info('Doing start or continue')
        os.makedirs(os.path.dirname(args.checkpoint) or '.', exist_ok=True)
        opt.run(max_ngen=args.max_ngen,
                offspring_size=args.offspring_size,
                continue_cp=args.continue_cp,
                cp_filename=args.checkpoint)

    if args.analyse:
        logger.info('Doing analyse')
        analyse(args)


if __name__ == '__main__':
    main()
