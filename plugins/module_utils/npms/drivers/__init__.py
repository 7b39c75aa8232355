# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How resources reach a node: Linux (a Runner and iproute2 / wg / nft) and VPP (vpp_papi)."""
