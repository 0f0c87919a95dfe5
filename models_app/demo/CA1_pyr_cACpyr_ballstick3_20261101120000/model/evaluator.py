"""Cell evaluator of the demonstration model: protocols, features, simulator.

create(etype) reads config/protocols.json and config/features.json under the
key `etype` and returns a BluePyOpt CellEvaluator.
"""

import bluepyopt.ephys as ephys

from . import template

# eFEL spike detection threshold (mV) at the soma and on the dendrites
SOMA_THRESHOLD = -20
DEND_THRESHOLD = -55


def define_protocols(etype):
    """Square-pulse protocols recorded at the soma (and where asked)"""
    soma_loc = ephys.locations.NrnSeclistCompLocation(
        name='soma',
        seclist_name='somatic',
        sec_index=0,
        comp_x=0.5)

    protocols = {}
    for protocol_name, definition in template.load_config(
            'protocols.json', etype).items():
        recordings = [ephys.recordings.CompRecording(
            name='%s.soma.v' % protocol_name,
            location=soma_loc,
            variable='v')]

        for rec in definition.get('extra_recordings', []):
            if rec['type'] != 'somadistance':
                raise ValueError(
                    'Recording type %s not supported' % rec['type'])
            location = ephys.locations.NrnSomaDistanceCompLocation(
                name=rec['name'],
                soma_distance=rec['somadistance'],
                seclist_name=rec['seclist_name'])
            recordings.append(ephys.recordings.CompRecording(
                name='%s.%s.%s' % (protocol_name, rec['name'], rec['var']),
                location=location,
                variable=rec['var']))

        stimuli = [ephys.stimuli.NrnSquarePulse(
            step_amplitude=stim['amp'],
            step_delay=stim['delay'],
            step_duration=stim['duration'],
            location=soma_loc,
            total_duration=stim['totduration'])
            for stim in definition['stimuli']]

        protocols[protocol_name] = ephys.protocols.SweepProtocol(
            protocol_name, stimuli, recordings)

    return protocols


def define_fitness_calculator(protocols, etype):
    """One objective per protocol.location.feature of features.json"""
    objectives = []
    for protocol_name, locations in template.load_config(
            'features.json', etype).items():
        # the first stimulus is the step, a second one is the holding current
        stimulus = protocols[protocol_name].stimuli[0]
        stim_start = stimulus.step_delay
        if protocol_name == 'bAP':
            stim_end = stimulus.total_duration
        else:
            stim_end = stimulus.step_delay + stimulus.step_duration

        for location, features in locations.items():
            threshold = SOMA_THRESHOLD if location == 'soma' \
                else DEND_THRESHOLD
            for efel_feature_name, (mean, std) in features.items():
                feature_name = '%s.%s.%s' % (
                    protocol_name, location, efel_feature_name)
                feature = ephys.efeatures.eFELFeature(
                    feature_name,
                    efel_feature_name=efel_feature_name,
                    recording_names={
                        '': '%s.%s.v' % (protocol_name, location)},
                    stim_start=stim_start,
                    stim_end=stim_end,
                    exp_mean=mean,
                    exp_std=std,
                    threshold=threshold)
                objectives.append(ephys.objectives.SingletonObjective(
                    feature_name, feature))

    return ephys.objectivescalculators.ObjectivesCalculator(objectives)


def create(etype, cvode_active=True, dt=0.025, cvode_minstep=None):
    """Create the cell evaluator"""
    cell = template.create(etype)

    fitness_protocols = define_protocols(etype)
    fitness_calculator = define_fitness_calculator(fitness_protocols, etype)

    param_names = [param.name for param in cell.params.values()
                   if not param.frozen]

    sim = ephys.simulators.NrnSimulator(
        dt=dt, cvode_active=cvode_active, cvode_minstep=cvode_minstep)

    # The protocols run in this process rather than one subprocess each
    # (BluePyOpt's default, used by the HBP models): it keeps an evaluation of
    # this small cell fast and gives the same traces.
    return ephys.evaluators.CellEvaluator(
        cell_model=cell,
        param_names=param_names,
        fitness_protocols=fitness_protocols,
        fitness_calculator=fitness_calculator,
        sim=sim,
        isolate_protocols=False)
