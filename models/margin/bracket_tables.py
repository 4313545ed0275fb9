"""The exchange bracket tables shipped with marginlab, selectable by name.

Each shipped table is a CSV file in ``marginlab/models/data`` read with
:meth:`~marginlab.models.margin.brackets.BracketTable.from_csv`; this module records, for
each name, the file, whether the contract is inverse (COIN-M, notional in coin), its contract
size, the exchange page the figures come from and the date they were in force. The same
sources, with the exact wording used, are in ``models/data/README.md``.

Every shipped table is historical: exchanges change their tiers without notice, so check the
exchange's current table (Binance: ``GET /fapi/v1/leverageBracket`` for USDⓈ-M,
``GET /dapi/v2/leverageBracket`` for COIN-M, or the "Leverage & Margin" page of the
contract) before margining a live book.

>>> from marginlab.models.margin import builtin_table, builtin_table_names
>>> "binance_ethusdt_2021" in builtin_table_names()
True
>>> builtin_table("binance_btcusd_perp_2021").maintenance_margin(300.0)  # BTC
25.69
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from .brackets import BracketTable

__all__ = ["BuiltinTableInfo", "builtin_table", "builtin_table_info", "builtin_table_names"]


@dataclass(frozen=True)
class BuiltinTableInfo:
    """Where a shipped bracket table comes from.

    Attributes
    ----------
    name : str
        The name to select it by (``builtin_table(name)``, or ``tables = {BTC = "<name>"}`` in
        a ``tiered`` method's configuration).
    symbol : str
        The exchange's symbol, e.g. ``"BTCUSD_PERP"``.
    file : str
        File name in ``marginlab/models/data``.
    inverse : bool
        True for a coin-margined (COIN-M) contract: notional in coin.
    contract_size : float
        USD per contract for inverse contracts (1.0 for linear ones: size in base units).
    notional_unit : str
        Unit of the table's notional (quote currency or coin).
    in_force : str
        When the figures applied, as precisely as the sources say.
    sources : tuple of str
        URLs of the exchange pages the figures come from.
    caveats : str
        What the sources do not pin down (empty when every figure is published).
    """

    name: str
    symbol: str
    file: str
    inverse: bool
    contract_size: float
    notional_unit: str
    in_force: str
    sources: tuple[str, ...]
    caveats: str = ""


_BINANCE_USDM_LEVERAGE = "https://www.binance.com/en/support/faq/360033162192"
_BINANCE_USDM_LIQ = "https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93"
_BINANCE_COINM_LEVERAGE = ("https://www.binance.com/en/support/faq/"
                           "be2c7d9d95b04a7e8044ed02dd7dfe5c")
_BINANCE_COINM_LIQ = ("https://www.binance.com/en/support/faq/"
                      "ceccfcfb4e3a45e3b48b0b1bb1a8ae46")
_BINANCE_COINM_MM_2021_04 = ("https://www.binance.com/en/support/announcement/"
                             "9c6a1766be424fccacd2549db3d61a3f")
_BINANCE_BUSD_2021_08 = ("https://www.binance.com/en/support/announcement/"
                         "updates-on-leverage-and-margin-tiers-of-binance-futures-contracts-"
                         "2021-08-18-34801a0c405a4b058f9ae18a1a34cad3")

_TABLES: dict[str, BuiltinTableInfo] = {
    info.name: info
    for info in (
        BuiltinTableInfo(
            name="binance_btcusdt_2021", symbol="BTCUSDT", file="binance_btcusdt_brackets.csv",
            inverse=False, contract_size=1.0, notional_unit="USDT",
            in_force="from 2021-03-18 09:00 UTC",
            sources=("https://www.binance.com/en/support/announcement/"
                     "86cf9aa472574b8cb2e05bb751c2a9a6",),
        ),
        BuiltinTableInfo(
            name="binance_ethusdt_2021", symbol="ETHUSDT", file="binance_ethusdt_brackets.csv",
            inverse=False, contract_size=1.0, notional_unit="USDT", in_force="2021",
            sources=(_BINANCE_USDM_LEVERAGE, _BINANCE_USDM_LIQ),
            caveats=("Tiers and leverage from Binance's USD-M leverage FAQ of 2021 (its "
                     "table read from the copy at docs.finandy.com/markets/finandy-futures/"
                     "untitled-1); maintenance rates and amounts from a third-party listing "
                     "(gist crackcomm/e29582030d9eeac6c6124a7503cd0ac2), checked against "
                     "Binance's liquidation FAQ example (bracket 6: 10 %, 135,365 USDT). The "
                     "exact dates the tiers applied are not known; above 20M USDT the FAQ "
                     "gives 2x (and 1x) without a cap, the listing a cap of 5,000M."),
        ),
        BuiltinTableInfo(
            name="binance_ethbusd_2021", symbol="ETHBUSD", file="binance_ethbusd_brackets.csv",
            inverse=False, contract_size=1.0, notional_unit="BUSD",
            in_force="from 2021-08-17 12:30 UTC",
            sources=(_BINANCE_BUSD_2021_08,),
            caveats=("BUSD-margined USD-M perpetual, since delisted with BUSD; every figure "
                     "is in the announcement."),
        ),
        BuiltinTableInfo(
            name="binance_btcbusd_2021", symbol="BTCBUSD", file="binance_ethbusd_brackets.csv",
            inverse=False, contract_size=1.0, notional_unit="BUSD",
            in_force="from 2021-08-17 12:30 UTC",
            sources=(_BINANCE_BUSD_2021_08,),
            caveats="Same announced table as ETHBUSD (one table for both symbols).",
        ),
        BuiltinTableInfo(
            name="binance_btcusd_perp_2021", symbol="BTCUSD_PERP",
            file="binance_btcusd_perp_brackets.csv", inverse=True, contract_size=100.0,
            notional_unit="BTC", in_force="2021-02 to 2021-04 (FAQ of 2021-02-05)",
            sources=(_BINANCE_COINM_LEVERAGE, _BINANCE_COINM_LIQ, _BINANCE_COINM_MM_2021_04),
            caveats=("Maintenance rates of brackets 1, 4, 5 and 7 and maintenance amounts "
                     "0.56, 1.81 and 11.81 BTC are printed in the COIN-M liquidation FAQ; the "
                     "rates of brackets 2, 3, 6 and 8 are the BTCUSD quarterly 'before "
                     "adjustment' rates of the 2021-04 announcement (same tiers), and they "
                     "reproduce the FAQ's maintenance amounts. Positions above 1,000 BTC "
                     "(2x/1x) are not tabulated: the sources do not give their cap."),
        ),
        BuiltinTableInfo(
            name="binance_ethusd_perp_2021", symbol="ETHUSD_PERP",
            file="binance_ethusd_perp_brackets.csv", inverse=True, contract_size=10.0,
            notional_unit="ETH", in_force="2021-02 to 2021-04",
            sources=(_BINANCE_COINM_LEVERAGE, _BINANCE_COINM_MM_2021_04),
            caveats=("Tiers and leverage are the perpetual's (COIN-M leverage FAQ); the "
                     "maintenance rates are the ETHUSD quarterly 'before adjustment' rates of "
                     "the 2021-04 announcement, whose tiers are the same: the perpetual's own "
                     "rates were not found. Positions above 10,000 ETH (2x/1x) are not "
                     "tabulated."),
        ),
    )
}


def builtin_table_names() -> tuple[str, ...]:
    """Names of the shipped bracket tables, sorted."""
    return tuple(sorted(_TABLES))


def builtin_table_info(name: str) -> BuiltinTableInfo:
    """Source, date, unit and contract size of a shipped table (see :class:`BuiltinTableInfo`)."""
    return _TABLES[_check_name(name)]


def builtin_table(name: str) -> BracketTable:
    """Load a shipped bracket table by name.

    Parameters
    ----------
    name : str
        One of :func:`builtin_table_names`: ``"binance_btcusdt_2021"``,
        ``"binance_ethusdt_2021"`` (USDⓈ-M, USDT-margined),
        ``"binance_ethbusd_2021"`` / ``"binance_btcbusd_2021"`` (USDⓈ-M, BUSD-margined),
        ``"binance_btcusd_perp_2021"`` / ``"binance_ethusd_perp_2021"`` (COIN-M, notional in
        coin, ``inverse=True``).

    Returns
    -------
    BracketTable
        Named after the exchange symbol. Use the contract size from
        :func:`builtin_table_info` for inverse positions sized in contracts.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    info = builtin_table_info(name)
    ref = resources.files("marginlab.models").joinpath(f"data/{info.file}")
    with resources.as_file(ref) as path:
        return BracketTable.from_csv(path, inverse=info.inverse, name=info.symbol)


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in _TABLES:
        raise ValueError(f"name {name!r} is not a shipped bracket table; known: "
                         f"{', '.join(builtin_table_names())}")
    return name
