Attribute VB_Name = "Ribbon"
' Ribbon callbacks for the tab in templates/ribbon/customUI14.xml.
' Each onAction Sub runs one thin Python entry point in xl_ecom.frontends.macros through
' xlwings' RunPython (the xlwings module in this project). User-facing text
' lives in Python and in the ribbon XML: VBA source stays ASCII.
Option Explicit

Public Sub RibbonRefresh(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.refresh()"
End Sub

Public Sub RibbonMakeDepartments(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.make_departments()"
End Sub

Public Sub RibbonMakeCounties(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.make_counties()"
End Sub

Public Sub RibbonCollect(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.collect()"
End Sub

Public Sub RibbonValidate(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.validate()"
End Sub

Public Sub RibbonSendMail(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.send_mail()"
End Sub

Public Sub RibbonNewRound(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.new_round()"
End Sub

Public Sub RibbonStatus(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.status()"
End Sub

Public Sub RibbonRemind(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.remind()"
End Sub

Public Sub RibbonReturn(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.return_submissions()"
End Sub

Public Sub RibbonReport(control As IRibbonControl)
    RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.report()"
End Sub
