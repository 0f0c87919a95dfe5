COMMENT
Hyperpolarisation-activated cation current (Ih) of the demonstration model
CA1_PC_demo, written for this project.

One activation gate l with a Boltzmann steady state and a bell-shaped time
constant; mixed Na/K current with its own reversal potential ehd:

    i = gbar * l * (v - ehd)

Kinetics are given at tref; other temperatures scale them by q10.
ENDCOMMENT

NEURON {
    SUFFIX hd
    NONSPECIFIC_CURRENT i
    RANGE gbar, g, ehd, linf, taul
    GLOBAL vhalf, kl, taumax, q10, tref
    THREADSAFE
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 1e-5 (S/cm2)   : maximal conductance
    ehd = -30 (mV)        : reversal potential
    vhalf = -82 (mV)      : half-activation voltage
    kl = 9 (mV)           : slope of the activation curve
    taumax = 40 (ms)      : time constant at v = vhalf, at tref
    q10 = 4.5
    tref = 6.3 (degC)
}

ASSIGNED {
    v (mV)
    celsius (degC)
    i (mA/cm2)
    g (S/cm2)
    linf (1)
    taul (ms)
}

STATE {
    l
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar * l
    i = g * (v - ehd)
}

INITIAL {
    rates(v)
    l = linf
}

DERIVATIVE states {
    rates(v)
    l' = (linf - l) / taul
}

PROCEDURE rates(v (mV)) {
    LOCAL qt, dv
    qt = q10 ^ ((celsius - tref) / 10)
    dv = v - vhalf
    linf = 1 / (1 + exp(dv / kl))
    taul = 2 * taumax / (exp(0.033 * dv) + exp(-0.083 * dv)) / qt
}
