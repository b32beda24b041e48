"""Physical constants shared by the astrophysics/cosmology reference models.

All values are SI unless the name says otherwise.  Sources: CODATA 2018 for
``C_SI``, ``G_SI`` and the Stefan-Boltzmann constant; IAU 2015 Resolution B3 for
the nominal solar mass parameter GM_sun; IAU 2012 Resolution B2 for the
astronomical unit (which fixes the parsec); WGS-84 for the Earth ellipsoid;
Fixsen (2009, ApJ 707, 916) for the CMB temperature.
"""

import math

C_SI = 299_792_458.0  # speed of light [m/s]
C_KM_S = C_SI / 1.0e3  # [km/s]
G_SI = 6.674_30e-11  # Newton's constant [m^3 kg^-1 s^-2]
GM_SUN_SI = 1.327_124_4e20  # nominal solar mass parameter [m^3 s^-2] (IAU 2015 B3)
MSUN_SI = GM_SUN_SI / G_SI  # [kg]
MTSUN_S = GM_SUN_SI / C_SI**3  # G M_sun / c^3 [s]  (= 4.925490947...e-6 s)
AU_SI = 149_597_870_700.0  # [m] (IAU 2012 B2)
PC_SI = AU_SI * 648_000.0 / math.pi  # parsec [m]
KPC_SI = 1.0e3 * PC_SI
MPC_SI = 1.0e6 * PC_SI
YEAR_S = 365.25 * 86_400.0  # Julian year [s]
EULER_GAMMA = 0.577_215_664_901_532_9

# Earth model: WGS-84 reference ellipsoid.
WGS84_A_M = 6_378_137.0  # semi-major axis [m]
WGS84_F = 1.0 / 298.257_223_563  # flattening
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)  # first eccentricity squared

# Radiation content for the background cosmology.
STEFAN_BOLTZMANN_SI = 5.670_374_419e-8  # [W m^-2 K^-4]
T_CMB_K = 2.7255  # Fixsen (2009)
N_EFF = 3.046  # effective neutrino number used with the Planck 2018 distance priors
H100_SI = 100.0e3 / MPC_SI  # 100 km/s/Mpc in s^-1
# Omega_gamma h^2 = rho_gamma / rho_crit(h=1); rho_gamma c^2 = (4 sigma_SB / c) T^4.
OMEGA_GAMMA_H2 = (4.0 * STEFAN_BOLTZMANN_SI / C_SI * T_CMB_K**4) / (
    3.0 * H100_SI**2 * C_SI**2 / (8.0 * math.pi * G_SI)
)
# Each neutrino species adds 7/8 (4/11)^(4/3) of the photon density.
OMEGA_R_H2 = OMEGA_GAMMA_H2 * (1.0 + 7.0 / 8.0 * (4.0 / 11.0) ** (4.0 / 3.0) * N_EFF)
