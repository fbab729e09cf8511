import VMMSysUtil
